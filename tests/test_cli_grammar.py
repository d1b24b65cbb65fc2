"""The netsh ipsec static grammar of ipsecctl: shapes, types, usage errors."""

from __future__ import annotations

import pytest

from ipsecd.cli.grammar import Command, UsageError, parse_command


def p(text: str) -> Command:
    import shlex

    return parse_command(shlex.split(text))


def test_add_filter_types() -> None:
    c = p("add filter filterlist=L srcaddr=me dstaddr=10.0.0.1 protocol=TCP srcport=0 dstport=443 mirrored=N")
    assert (c.verb, c.obj) == ("add", "filter")
    assert c.args == {
        "filterlist": "L",
        "srcaddr": "me",
        "dstaddr": "10.0.0.1",
        "protocol": "tcp",
        "srcport": 0,
        "dstport": 443,
        "mirrored": False,
    }


def test_numeric_protocol_and_case_insensitive_keywords() -> None:
    c = p("ADD Filter FilterList=L SrcAddr=any DstAddr=me Protocol=50")
    assert c.args["protocol"] == 50 and c.args["filterlist"] == "L"


def test_space_separated_lists_and_yes_no() -> None:
    c = p(
        'add filteraction name=A action=Negotiate qmsecmethods="ESP[3DES,SHA1] AH[SHA1]" qmpfs=yes inpass=y'
    )
    assert c.args["qmsecmethods"] == ("ESP[3DES,SHA1]", "AH[SHA1]")
    assert c.args["qmpfs"] is True and c.args["inpass"] is True and c.args["action"] == "negotiate"


def test_auth_in_typed_order_and_conntype_dialup() -> None:
    c = p(
        'add rule name=r policy=P filterlist=L filteraction=A rootca="/ca.pem certmap:yes" psk=x kerberos=no'
    )
    assert c.auth == (("rootca", "/ca.pem certmap:yes"), ("psk", "x"))
    c = p("set rule name=r policy=P conntype=dialup kerberos=yes")
    assert c.args["conntype"] == "remote" and c.auth == (("kerberos", ""),)


def test_all_word() -> None:
    c = p("delete policy all")
    assert c.all and "name" not in c.args
    assert p("show filterlist all").all
    assert p("delete rule all policy=P").all


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "missing command"),
        ("frobnicate", "unknown command"),
        ("add", "missing object"),
        ("add gizmo name=x", "unknown object"),
        ("set filter filterlist=L", "netsh has no 'set filter'"),
        ("add policy", "missing name="),
        ("add filter filterlist=L srcaddr=me", "missing dstaddr="),
        ("add policy name=P mmpfs=maybe", "expected yes or no"),
        ("add policy name=P qmpermm=-1", "expected a number"),
        ("add filter filterlist=L srcaddr=me dstaddr=any dstport=70000", "out of range"),
        ("add policy name=P colour=blue", "unknown parameter 'colour'"),
        ("add policy name=P name=Q", "given twice"),
        ("add policy P", "expected key=value"),
        ("delete policy name=P all", "either name= or all"),
        ("add rule name=r policy=P filterlist=L filteraction=A psk=a psk=b", "psk given twice"),
        ("add rule name=r policy=P filterlist=L filteraction=A ikeversion=3", "out of range"),
        ("add rule name=r policy=P filterlist=L filteraction=A conntype=wifi", "all, lan or dialup"),
        ("match srcaddr=1.1.1.1 dstaddr=2.2.2.2 direction=sideways", "out or in"),
    ],
)
def test_usage_errors(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=None) as exc:
        p(text)
    assert needle in str(exc.value)


def test_usage_error_never_echoes_a_psk_value() -> None:
    with pytest.raises(UsageError) as exc:
        p("add rule name=r policy=P filterlist=L filteraction=A psk=SECRETVALUE psk=SECRETVALUE")
    assert "SECRETVALUE" not in str(exc.value)


def test_bare_words_are_not_echoed_unless_keywords() -> None:
    with pytest.raises(UsageError) as exc:
        p("add rule name=r policy=P filterlist=L filteraction=A psk my-secret-word")
    assert "'psk'" in str(exc.value) and "my-secret-word" not in str(exc.value)
    with pytest.raises(UsageError) as exc:
        p("add rule name=r policy=P filterlist=L filteraction=A my-secret-word")
    assert "word 5" in str(exc.value) and "my-secret-word" not in str(exc.value)
