# Type stub of the C extension ipsecd.datapath._fastpath (ipsecd/datapath/native/fastpath.c).
STATS: tuple[str, ...]

def open_tun(name: str, vnet_hdr: bool = ..., multi_queue: bool = ..., /) -> tuple[int, str, bool, int]: ...

class FastPath:
    def __init__(self, tun_fd: int, udp_fd: int, vnet_hdr: bool = ..., offload: int = ...) -> None: ...
    def add_sa(
        self,
        outbound: bool,
        config: tuple[int, ...],
        encr_key: bytes,
        integ_key: bytes,
        iv_key: bytes,
        tunnel_src: bytes,
        tunnel_dst: bytes,
        selectors: tuple[tuple[int, bytes, int, bytes, int, int, int, int, int, int], ...],
        peer_addr: bytes,
        peer_port: int,
        /,
    ) -> int: ...
    def del_sa(self, handle: int, /) -> bool: ...
    def expire_sa(self, handle: int, kind: int, reason: int, /) -> bool: ...
    def add_rule(
        self,
        rule_id: int,
        weight: int,
        version: int,
        src: bytes,
        src_plen: int,
        dst: bytes,
        dst_plen: int,
        proto: int,
        sp_lo: int,
        sp_hi: int,
        dp_lo: int,
        dp_hi: int,
        action: int,
        sa_handle: int,
        /,
    ) -> None: ...
    def del_rule(self, rule_id: int, /) -> bool: ...
    def bind_rule(self, rule_id: int, sa_handle: int, /) -> bool: ...
    def configure(
        self,
        default_action: int = ...,
        batch: int = ...,
        slow_queue: int = ...,
        acquire_interval: float = ...,
        nice: int = ...,
        rt_priority: int = ...,
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
    def event_fd(self) -> int: ...
    def drain_events(self) -> list[tuple[int, int, int]]: ...
    def drain_slow(
        self, max_packets: int = ..., /
    ) -> list[tuple[int, int, tuple[str, int] | None, bytes]]: ...
    def stats(self) -> dict[str, int]: ...
    def sa_counters(self, handle: int, /) -> tuple[dict[str, int], int, int, int] | None: ...
    def features(self) -> dict[str, bool | int]: ...
    def table_sizes(self) -> dict[str, int]: ...
