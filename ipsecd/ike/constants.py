"""IKEv1 / ISAKMP / IPsec DOI numbers, named as in the RFCs and the IANA registries.

Names follow the RFC spelling with ``-`` turned into ``_``. Values read off the wire are kept as
plain ``int`` by the codec (an unknown value is not an error there); these enums are ``IntEnum`` so
they compare equal to those ints.
"""

from __future__ import annotations

import enum

ISAKMP_MAJOR_VERSION = 1  # RFC 2408 section 3.1
ISAKMP_MINOR_VERSION = 0
ISAKMP_PORT = 500
ISAKMP_NATT_PORT = 4500  # RFC 3947 section 4
DOI_ISAKMP = 0  # RFC 2408 section 3.4: generic ISAKMP situation
DOI_IPSEC = 1  # RFC 2407 section 4.2


class ExchangeType(enum.IntEnum):
    """RFC 2408 section 3.1 and RFC 2409 Appendix A ("Exchange Type")."""

    NONE = 0
    BASE = 1
    IDENTITY_PROTECTION = 2  # Main Mode
    AUTHENTICATION_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    QUICK_MODE = 32  # RFC 2409 section 5.5
    NEW_GROUP_MODE = 33  # RFC 2409 section 5.6


class Flag(enum.IntFlag):
    """ISAKMP header flags, RFC 2408 section 3.1."""

    E = 0x01  # Encryption
    C = 0x02  # Commit
    A = 0x04  # Authentication Only


class PayloadType(enum.IntEnum):
    """Next Payload values, RFC 2408 section 3.1 (and RFC 3947 section 3 for NAT-D / NAT-OA)."""

    NONE = 0
    SA = 1
    P = 2  # Proposal
    T = 3  # Transform
    KE = 4
    ID = 5
    CERT = 6
    CR = 7  # Certificate Request
    HASH = 8
    SIG = 9
    NONCE = 10
    N = 11  # Notification
    D = 12  # Delete
    VID = 13  # Vendor ID
    NAT_D = 20  # RFC 3947 section 3.2
    NAT_OA = 21  # RFC 3947 section 5.2


class Situation(enum.IntFlag):
    """IPsec DOI situation bits, RFC 2407 section 4.2."""

    SIT_IDENTITY_ONLY = 0x01
    SIT_SECRECY = 0x02
    SIT_INTEGRITY = 0x04


class ProtocolId(enum.IntEnum):
    """IPsec DOI security protocol identifiers, RFC 2407 section 4.4.1."""

    RESERVED = 0
    PROTO_ISAKMP = 1
    PROTO_IPSEC_AH = 2
    PROTO_IPSEC_ESP = 3
    PROTO_IPCOMP = 4


class IsakmpTransformId(enum.IntEnum):
    """RFC 2407 section 4.4.2."""

    KEY_IKE = 1


class AhTransformId(enum.IntEnum):
    """IPsec DOI AH transform identifiers, RFC 2407 section 4.4.3 and the IANA registry."""

    AH_MD5 = 2
    AH_SHA = 3
    AH_DES = 4
    AH_SHA2_256 = 5  # RFC 4868
    AH_SHA2_384 = 6
    AH_SHA2_512 = 7


class EspTransformId(enum.IntEnum):
    """IPsec DOI ESP transform identifiers, RFC 2407 section 4.4.4 and the IANA registry."""

    ESP_DES_IV64 = 1
    ESP_DES = 2
    ESP_3DES = 3
    ESP_RC5 = 4
    ESP_IDEA = 5
    ESP_CAST = 6
    ESP_BLOWFISH = 7
    ESP_3IDEA = 8
    ESP_DES_IV32 = 9
    ESP_RC4 = 10
    ESP_NULL = 11
    ESP_AES = 12  # RFC 3602 section 5.1 (AES-CBC)
    ESP_AES_CTR = 13  # RFC 3686
    ESP_AES_GCM_8 = 18  # RFC 4106 section 8.1
    ESP_AES_GCM_12 = 19
    ESP_AES_GCM_16 = 20
    ESP_NULL_AUTH_AES_GMAC = 23  # RFC 4543


class IpsecAttr(enum.IntEnum):
    """IPsec DOI SA attribute types, RFC 2407 section 4.5."""

    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTH_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMPRESS_DICTIONARY_SIZE = 8
    COMPRESS_PRIVATE_ALGORITHM = 9


class LifeType(enum.IntEnum):
    """SA Life Type values: RFC 2407 section 4.5 and RFC 2409 Appendix A share them."""

    SECONDS = 1
    KILOBYTES = 2


class EncapsulationMode(enum.IntEnum):
    """RFC 2407 section 4.5; RFC 3947 section 5.1 for the UDP-encapsulated modes."""

    TUNNEL = 1
    TRANSPORT = 2
    UDP_ENCAPSULATED_TUNNEL = 3
    UDP_ENCAPSULATED_TRANSPORT = 4


class AuthAlgorithm(enum.IntEnum):
    """IPsec DOI Authentication Algorithm attribute values, RFC 2407 section 4.5 + IANA."""

    HMAC_MD5 = 1
    HMAC_SHA = 2
    DES_MAC = 3
    KPDK = 4
    HMAC_SHA2_256 = 5  # RFC 4868
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    AES_128_GMAC = 11  # RFC 4543
    AES_192_GMAC = 12
    AES_256_GMAC = 13


class IkeAttr(enum.IntEnum):
    """IKE (Phase 1) attribute classes, RFC 2409 Appendix A. B = basic (TV), V = variable (TLV)."""

    ENCRYPTION_ALGORITHM = 1  # B
    HASH_ALGORITHM = 2  # B
    AUTHENTICATION_METHOD = 3  # B
    GROUP_DESCRIPTION = 4  # B
    GROUP_TYPE = 5  # B
    GROUP_PRIME = 6  # V
    GROUP_GENERATOR_ONE = 7  # V
    GROUP_GENERATOR_TWO = 8  # V
    GROUP_CURVE_A = 9  # V
    GROUP_CURVE_B = 10  # V
    LIFE_TYPE = 11  # B
    LIFE_DURATION = 12  # V
    PRF = 13  # B
    KEY_LENGTH = 14  # B
    FIELD_SIZE = 15  # B
    GROUP_ORDER = 16  # V


class EncryptionAlgorithm(enum.IntEnum):
    """RFC 2409 Appendix A "Encryption Algorithm"; AES from RFC 3602 section 5.1 / IANA."""

    DES_CBC = 1
    IDEA_CBC = 2
    BLOWFISH_CBC = 3
    RC5_R16_B64_CBC = 4
    TRIPLE_DES_CBC = 5  # "3DES-CBC": a Python name cannot start with a digit
    CAST_CBC = 6
    AES_CBC = 7


class HashAlgorithm(enum.IntEnum):
    """RFC 2409 Appendix A "Hash Algorithm"; SHA2 values from RFC 4868 / IANA."""

    MD5 = 1
    SHA = 2
    TIGER = 3
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class AuthMethod(enum.IntEnum):
    """RFC 2409 Appendix A "Authentication Method"."""

    PRE_SHARED_KEY = 1
    DSS_SIGNATURES = 2
    RSA_SIGNATURES = 3
    ENCRYPTION_WITH_RSA = 4
    REVISED_ENCRYPTION_WITH_RSA = 5
    ECDSA_SHA256_P256 = 9  # RFC 4754
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11


class GroupDescription(enum.IntEnum):
    """IKE group numbers: RFC 2409 section 6, RFC 3526, RFC 5903, RFC 8031 (IANA registry)."""

    MODP_768 = 1
    MODP_1024 = 2
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    CURVE25519 = 31


class GroupType(enum.IntEnum):
    """RFC 2409 Appendix A "Group Type"."""

    MODP = 1
    ECP = 2
    EC2N = 3


class IdType(enum.IntEnum):
    """IPsec DOI identification types, RFC 2407 section 4.6.2.1."""

    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_USER_FQDN = 3
    ID_IPV4_ADDR_SUBNET = 4
    ID_IPV6_ADDR = 5
    ID_IPV6_ADDR_SUBNET = 6
    ID_IPV4_ADDR_RANGE = 7
    ID_IPV6_ADDR_RANGE = 8
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11


class CertEncoding(enum.IntEnum):
    """Certificate encodings, RFC 2408 section 3.9."""

    NONE = 0
    PKCS7_WRAPPED_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    X509_KEY_EXCHANGE = 5
    KERBEROS_TOKENS = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10


class NotifyType(enum.IntEnum):
    """Notify message types: RFC 2408 section 3.14.1, RFC 2407 section 4.6.3, RFC 3706."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384  # RFC 2408 section 3.14.1 status type
    RESPONDER_LIFETIME = 24576  # RFC 2407 section 4.6.3.1
    REPLAY_STATUS = 24577  # RFC 2407 section 4.6.3.2
    INITIAL_CONTACT = 24578  # RFC 2407 section 4.6.3.3
    R_U_THERE = 36136  # RFC 3706 (Dead Peer Detection)
    R_U_THERE_ACK = 36137


# RFC 2408 section 3.14.1: 1..8191 are errors; 8192..16383 private-use errors; above are status.
NOTIFY_ERROR_MAX = 16383
