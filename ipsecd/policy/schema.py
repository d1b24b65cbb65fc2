"""The keys of the policy store's TOML tables (docs/store.md), shared by the validator and the editor.

``*_SCALAR_KEYS`` are the keys that map one-to-one to an ``ipsecctl static`` parameter; the full
``*_KEYS`` add the nested tables and arrays (filters, rules, auth methods).
"""

from __future__ import annotations

TOP_KEYS = ("daemon", "filterlist", "filteraction", "policy", "builtinauth", "xfrm")
XFRM_KEYS = ("states", "policies")
DAEMON_KEYS = ("assigned_policy", "ipsecexempt", "ikelogging", "strongcrlcheck")

FILTERLIST_SCALAR_KEYS = ("name", "description")
FILTERLIST_KEYS = (*FILTERLIST_SCALAR_KEYS, "filter")
FILTER_KEYS = (
    "srcaddr",
    "srcmask",
    "dstaddr",
    "dstmask",
    "protocol",
    "srcport",
    "dstport",
    "mirrored",
    "description",
)
FILTERACTION_KEYS = ("name", "description", "action", "qmsecmethods", "inpass", "soft", "qmpfs")
POLICY_SCALAR_KEYS = (
    "name",
    "description",
    "pollinginterval",
    "mmlifetime",
    "qmpermm",
    "mmsecmethods",
    "mmpfs",
    "activatedefaultrule",
)
POLICY_KEYS = (*POLICY_SCALAR_KEYS, "defaultruleauth", "rule")
RULE_SCALAR_KEYS = (
    "name",
    "description",
    "filterlist",
    "filteraction",
    "tunnel",
    "conntype",
    "activate",
    "ikeversion",
    "forceencap",
)
RULE_KEYS = (*RULE_SCALAR_KEYS, "auth")
AUTH_KEYS = ("method", "psk", "rootca", "certmap", "cert", "key")
BUILTINAUTH_KEYS = ("policy", "auth")
