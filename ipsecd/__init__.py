"""ipsecd: a user-space IKE/IPsec daemon bringing the Windows IPsec policy-agent model to Linux."""

__version__ = "0.1.0"
