"""The IP Security Monitor's statistics: field name -> the label Windows shows.

One catalogue for the daemon (ipsecd.daemon.monitor counts them) and for ipsecctl (which renders
them), like ipsecd.log.events is for the events.
"""

from __future__ import annotations

MM_STATS: dict[str, str] = {
    "active_acquire": "Active Acquire",
    "active_receive": "Active Receive",
    "acquire_failures": "Acquire Failures",
    "receive_failures": "Receive Failures",
    "send_failures": "Send Failures",
    "acquire_heap_size": "Acquire Heap Size",
    "receive_heap_size": "Receive Heap Size",
    "negotiation_failures": "Negotiation Failures",
    "authentication_failures": "Authentication Failures",
    "invalid_cookies_received": "Invalid Cookies Received",
    "total_acquire": "Total Acquire",
    "total_get_spi": "Total Get SPI",
    "key_additions": "Key Additions",
    "key_updates": "Key Updates",
    "get_spi_failures": "Get SPI Failures",
    "key_addition_failures": "Key Addition Failures",
    "key_update_failures": "Key Update Failures",
    "isadb_list_size": "ISADB List Size",
    "connection_list_size": "Connection List Size",
    "oakley_main_mode": "Oakley Main Mode",
    "oakley_quick_mode": "Oakley Quick Mode",
    "soft_associations": "Soft Associations",
    "invalid_packets": "Invalid Packets",
}

QM_STATS: dict[str, str] = {
    "active_sa": "Active SA",
    "offloaded_sa": "Offloaded SA",
    "pending_key_operations": "Pending Key Operations",
    "key_additions": "Key Additions",
    "key_deletions": "Key Deletions",
    "rekeys": "ReKeys",
    "active_tunnels": "Active Tunnels",
    "bad_spi_packets": "Bad SPI Packets",
    "packets_not_decrypted": "Packets Not Decrypted",
    "packets_not_authenticated": "Packets Not Authenticated",
    "packets_with_replay_detection": "Packets With Replay Detection",
    "confidential_bytes_sent": "Confidential Bytes Sent",
    "confidential_bytes_received": "Confidential Bytes Received",
    "authenticated_bytes_sent": "Authenticated Bytes Sent",
    "authenticated_bytes_received": "Authenticated Bytes Received",
    "transport_bytes_sent": "Transport Bytes Sent",
    "transport_bytes_received": "Transport Bytes Received",
    "tunnel_bytes_sent": "Bytes Sent In Tunnels",
    "tunnel_bytes_received": "Bytes Received In Tunnels",
    "offloaded_bytes_sent": "Offloaded Bytes Sent",
    "offloaded_bytes_received": "Offloaded Bytes Received",
}
