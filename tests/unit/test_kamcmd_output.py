"""kamcmd output parsers of the test harness, on what Kamailio 5.6.3 and 6.0.1 print (captured)."""
from harness.kamcmd import list_sockets

# `kamcmd corex.list_sockets`, Kamailio 5.6.3 (Debian 12)
SOCKETS_5_6 = """{
\tPROTO: udp
\tNAME: 127.0.0.1
\tADDRLIST: {
\t\tADDR: 127.0.0.1
\t}
\tPORT: 5060
\tMCAST: no
\tMHOMED: no
\tVIRTUAL: no
\tSOCKNAME: public
\tADVERTISE: -
}
{
\tPROTO: udp
\tNAME: 127.0.0.2
\tADDRLIST: {
\t\tADDR: 127.0.0.2
\t}
\tPORT: 5060
\tMCAST: no
\tMHOMED: no
\tVIRTUAL: no
\tSOCKNAME: -
\tADVERTISE: -
}
"""

# the same sockets, Kamailio 6.0.1 (Debian 13)
SOCKETS_6_0 = """{
\taf: IPv4
\tproto: udp
\tname: 127.0.0.1
\taddrlist: {
\t\taddr: 127.0.0.1
\t}
\tport: 5060
\tsockstr: udp:127.0.0.1:5060
\tagname: none
\tmcast: no
\tmhomed: no
\tvirtual: no
\tsockname: public
\tadvertise: -
}
{
\taf: IPv4
\tproto: udp
\tname: 127.0.0.2
\taddrlist: {
\t\taddr: 127.0.0.2
\t}
\tport: 5060
\tsockstr: udp:127.0.0.2:5060
\tagname: none
\tmcast: no
\tmhomed: no
\tvirtual: no
\tsockname: -
\tadvertise: -
}
"""


def test_both_layouts_give_the_same_sockets():
    for text in (SOCKETS_5_6, SOCKETS_6_0):
        sockets = list_sockets(text)
        assert [(s["addr"], s["port"], s["sockname"], s["proto"]) for s in sockets] == [
            ("127.0.0.1", "5060", "public", "udp"), ("127.0.0.2", "5060", "-", "udp")]


def test_the_5_6_pattern_the_sbc_test_used_finds_nothing_in_6_0():
    """Control: why the parser exists (the SBC test's old regex, on 6.0's output)."""
    import re
    old = r"ADDR: (\S+)\s+}\s+PORT: \d+.*?SOCKNAME: (\S+)"
    assert re.findall(old, SOCKETS_5_6, re.S) and not re.findall(old, SOCKETS_6_0, re.S)
