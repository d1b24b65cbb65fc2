"""IKEv2 numbers, named as in RFC 7296 section 3 and the IANA "IKEv2 Parameters" registry.

Kept apart from ``ipsecd.ike.constants`` (IKEv1 / ISAKMP): several registries share names but not
values (Notify types, payload types, ID types). Values read off the wire stay plain ``int`` in the
codec (an unknown value is not a decoding error); these enums are ``IntEnum`` so they compare equal.
"""

from __future__ import annotations

import enum

IKEV2_MAJOR_VERSION = 2  # RFC 7296 section 3.1
IKEV2_MINOR_VERSION = 0
IKE_PORT = 500
IKE_NATT_PORT = 4500  # RFC 7296 section 2.23
NON_ESP_MARKER = bytes(4)  # RFC 3948 section 2.2: IKE on port 4500 is prefixed by four zero bytes


class ExchangeType(enum.IntEnum):
    """RFC 7296 section 3.1."""

    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37


class Flag(enum.IntFlag):
    """IKE header flags, RFC 7296 section 3.1."""

    I = 0x08  # noqa: E741 - Initiator (the RFC's name)
    V = 0x10  # Version
    R = 0x20  # Response


class PayloadType(enum.IntEnum):
    """RFC 7296 section 3.2; SKF from RFC 7383 section 2.5."""

    NONE = 0
    SA = 33
    KE = 34
    IDi = 35
    IDr = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40  # Ni, Nr
    N = 41  # Notify
    D = 42  # Delete
    V = 43  # Vendor ID
    TSi = 44
    TSr = 45
    SK = 46  # Encrypted and Authenticated
    CP = 47  # Configuration
    EAP = 48
    SKF = 53  # Encrypted and Authenticated Fragment (RFC 7383)


class ProtocolId(enum.IntEnum):
    """Security protocol identifiers, RFC 7296 section 3.3.1."""

    NONE = 0
    IKE = 1
    AH = 2
    ESP = 3


class TransformType(enum.IntEnum):
    """RFC 7296 section 3.3.2."""

    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5


class EncrId(enum.IntEnum):
    """Transform Type 1, IANA registry (RFC 7296, RFC 5282, RFC 4106, RFC 7634)."""

    ENCR_3DES = 3
    ENCR_NULL = 11
    ENCR_AES_CBC = 12
    ENCR_AES_CTR = 13
    ENCR_AES_GCM_8 = 18
    ENCR_AES_GCM_12 = 19
    ENCR_AES_GCM_16 = 20
    ENCR_NULL_AUTH_AES_GMAC = 21
    ENCR_CHACHA20_POLY1305 = 28


class PrfId(enum.IntEnum):
    """Transform Type 2, RFC 7296 section 3.3.2 and RFC 4868."""

    PRF_HMAC_MD5 = 1
    PRF_HMAC_SHA1 = 2
    PRF_AES128_XCBC = 4
    PRF_HMAC_SHA2_256 = 5
    PRF_HMAC_SHA2_384 = 6
    PRF_HMAC_SHA2_512 = 7


class IntegId(enum.IntEnum):
    """Transform Type 3, RFC 7296 section 3.3.2 and RFC 4868."""

    NONE = 0
    AUTH_HMAC_MD5_96 = 1
    AUTH_HMAC_SHA1_96 = 2
    AUTH_AES_XCBC_96 = 5
    AUTH_HMAC_SHA2_256_128 = 12
    AUTH_HMAC_SHA2_384_192 = 13
    AUTH_HMAC_SHA2_512_256 = 14


class EsnId(enum.IntEnum):
    """Transform Type 5."""

    NO_ESN = 0
    ESN = 1


class TransformAttr(enum.IntEnum):
    """Transform attribute types, RFC 7296 section 3.3.5."""

    KEY_LENGTH = 14


class IdType(enum.IntEnum):
    """RFC 7296 section 3.5."""

    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_RFC822_ADDR = 3
    ID_IPV6_ADDR = 5
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11


class CertEncoding(enum.IntEnum):
    """RFC 7296 section 3.6."""

    PKCS7_WRAPPED_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    KERBEROS_TOKEN = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10
    RAW_RSA_KEY = 11
    HASH_AND_URL_X509 = 12
    HASH_AND_URL_BUNDLE = 13


class AuthMethod(enum.IntEnum):
    """RFC 7296 section 3.8; 14 from RFC 7427."""

    RSA_DIGITAL_SIGNATURE = 1
    SHARED_KEY_MIC = 2
    DSS_DIGITAL_SIGNATURE = 3
    ECDSA_SHA256_P256 = 9  # RFC 4754
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    DIGITAL_SIGNATURE = 14  # RFC 7427


class HashAlgorithm(enum.IntEnum):
    """RFC 7427 section 7: data of SIGNATURE_HASH_ALGORITHMS (2 bytes each)."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5  # RFC 8420


class NotifyType(enum.IntEnum):
    """Notify message types, RFC 7296 section 3.10.1; later RFCs as marked."""

    # Errors (below 16384).
    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    # Status types.
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396  # RFC 4555
    MULTIPLE_AUTH_SUPPORTED = 16404  # RFC 4739
    EAP_ONLY_AUTHENTICATION = 16417  # RFC 5998
    IKEV2_FRAGMENTATION_SUPPORTED = 16430  # RFC 7383
    SIGNATURE_HASH_ALGORITHMS = 16431  # RFC 7427


NOTIFY_ERROR_MAX = 16383  # RFC 7296 section 3.10.1: types below 16384 are errors


class TsType(enum.IntEnum):
    """Traffic selector types, RFC 7296 section 3.13.1."""

    TS_IPV4_ADDR_RANGE = 7
    TS_IPV6_ADDR_RANGE = 8


class CfgType(enum.IntEnum):
    """Configuration payload types, RFC 7296 section 3.15."""

    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4


class CfgAttr(enum.IntEnum):
    """Configuration attribute types, RFC 7296 section 3.15.1 (those ipsecd knows by name)."""

    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
