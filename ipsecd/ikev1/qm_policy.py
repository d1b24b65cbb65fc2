"""The Quick Mode responder's policy lookup from the ordered specific filters of the active policy.

The initiator's IDci / IDcr (RFC 2409 section 5.5) are matched against our outbound filters, most
specific first (``ipsecd.policy.order``): the first Negotiate filter whose source covers our side
(IDcr) and whose destination covers the peer's side (IDci), with a compatible protocol and ports,
decides; its filter action gives the methods and ``qmpfs``, its rule the tunnel mode. The SA is
made for exactly the selectors the initiator asked for (which lie inside the filter). A Block or
Permit filter deciding first means no SA (None: INVALID-ID-INFORMATION).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ipsecd.ikev1.quick_mode import Lookup, QmPolicy
from ipsecd.ikev1.selectors import TrafficSelector, selectors_of_filter
from ipsecd.policy.model import Action, FilterAction
from ipsecd.policy.order import Direction, SpecificFilter


def responder_lookup(
    filters: Sequence[SpecificFilter], actions: Mapping[str, FilterAction], replay_window: int = 64
) -> Lookup:
    """``filters`` in decision order (most specific first); ``actions`` by filter action name."""
    outbound = [f for f in filters if f.direction is Direction.OUTBOUND]

    def lookup(local: TrafficSelector, remote: TrafficSelector) -> QmPolicy | None:
        for sf in outbound:
            f_local, f_remote = selectors_of_filter(sf)
            if not (f_local.contains(local) and f_remote.contains(remote)):
                continue
            if sf.action is not Action.NEGOTIATE:
                return None
            fa = actions.get(sf.filteraction)
            if fa is None or not fa.qmsecmethods:
                return None
            base = QmPolicy.from_filter_action(fa, sf, replay_window)
            return QmPolicy(base.methods, base.pfs_group, base.tunnel, local, remote, replay_window)
        return None

    return lookup
