"""make bench-instructions' arithmetic: reading callgrind's files, naming the parts, pairing packets."""
from bench import callgrind
from bench.instructions import Packet, Tally, classify, structure

# a callgrind dump as valgrind 3.19 writes one (name compression, a call with its inclusive cost)
DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
part: 3
desc: Trigger: --dump-after=receive_msg

positions: line
events: Ir
summary: 1000

ob=(1) /usr/sbin/kamailio
fl=(1) ???
fn=(1) receive_msg
0 100
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfi=(2) ???
cfn=(2) __snprintf_chk
calls=2 0
0 300
cfn=(3) sr_kemi_route
calls=1 0
0 600
fn=(3)
0 50
cob=(3) /usr/lib/x86_64-linux-gnu/kamailio/modules/app_python3.so
cfn=(4) apy_exec
calls=1 0
0 550

ob=(2)
fn=(2)
0 120
cfn=(5) __vfprintf_internal
calls=2 0
0 180
fn=(5)
0 180

ob=(3)
fn=(4)
0 40
cob=(4) /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0
cfn=(6) PyObject_CallObject
calls=1 0
0 510

ob=(4)
fn=(6)
0 510
"""


def test_parse_reads_own_costs_and_inclusive_call_costs(tmp_path):
    path = tmp_path / "cg.4242.3"
    path.write_text(DUMP)
    prof = callgrind.parse(path)
    assert prof.events == ["Ir"] and prof.trigger == "--dump-after=receive_msg"
    kam, libc = "/usr/sbin/kamailio", "/usr/lib/x86_64-linux-gnu/libc.so.6"
    # the cost line after calls= is the call's inclusive cost, not the caller's own
    assert prof.self_cost[(kam, "receive_msg")] == [100]
    assert prof.self_cost[(kam, "sr_kemi_route")] == [50]
    assert prof.self_cost[(libc, "__snprintf_chk")] == [120]
    assert prof.calls[((kam, "receive_msg"), (libc, "__snprintf_chk"))] == [2, 300]
    # a compressed name used again later resolves to its first spelling
    assert prof.calls[((kam, "sr_kemi_route"), ("/usr/lib/x86_64-linux-gnu/kamailio/modules/app_python3.so",
                                                "apy_exec"))] == [1, 550]
    assert prof.total() == 1000


def test_parts_by_object_and_formatting(tmp_path):
    path = tmp_path / "cg.4242.3"
    path.write_text(DUMP)
    parts = callgrind.by_category(callgrind.parse(path))
    assert parts == {"kamailio_core": 150, "libc_format": 300, "ksr_glue": 40, "libpython": 510}
    assert callgrind.category("/usr/lib/x86_64-linux-gnu/libc.so.6", "memcpy") == "libc"
    assert callgrind.category("/usr/lib/x86_64-linux-gnu/kamailio/modules/tm.so") == "kamailio_modules"
    assert callgrind.category("/usr/lib/python3.11/lib-dynload/_hashlib.cpython-311-x86_64-linux-gnu.so") \
        == "python_ext"


def test_structure_and_tally(tmp_path):
    path = tmp_path / "cg.4242.3"
    path.write_text(DUMP)
    prof = callgrind.parse(path)
    s = structure(prof, reply=False)
    assert s["routes"] == 600                  # receive_msg -> sr_kemi_route, inclusive
    assert s["python_callbacks"] == 550        # into app_python3's route entry
    t = Tally()
    t.add(prof, reply=False)
    t.add(prof, reply=False)
    summary = t.summary(per=2)
    assert summary["Ir"] == 1000 and summary["messages"] == 1
    assert summary["python_entries"] == 1
    assert summary["formatting_by_caller"] == {"kamailio:receive_msg": 300}
    assert summary["top_functions"]["libpython3.11.so.1.0:PyObject_CallObject"] == [510, 1]


def test_instruction_addresses_give_the_code_footprint(tmp_path):
    path = tmp_path / "cg.1.1"
    path.write_text("positions: instr line\nevents: Ir\n\nob=(1) /usr/sbin/kamailio\nfn=(1) f\n"
                    "0x1000 0 3\n0x1004 0 1\n0x1040 0 2\n0x10c0 0 1\n")
    prof = callgrind.parse(path)
    # 0x1000 and 0x1004 share a 64-byte line; 0x1040 and 0x10c0 are two more
    assert prof.code_lines == {"/usr/sbin/kamailio": {0x40, 0x41, 0x43}}
    assert prof.total() == 7


def _p(ns, inbound, key, status=0, method="INVITE"):
    return Packet(ns, inbound, "127.0.0.1", key, status, method)


def test_each_inbound_packet_is_named_by_what_kamailio_did_with_it():
    inv1, ack1, inv2, bye = ("c", "1", "INVITE"), ("c", "1", "ACK"), ("c", "2", "INVITE"), ("c", "3", "BYE")
    packets = [
        _p(1, True, inv1), _p(2, False, inv1, 407),                      # challenged
        _p(3, True, ack1, method="ACK"),                                  # absorbed by tm
        _p(4, True, inv2), _p(5, False, inv2, 100), _p(6, False, inv2),  # 100 Trying, then relayed
        _p(7, True, inv2, 180), _p(8, False, inv2, 180),
        _p(9, True, bye, method="BYE"), _p(10, False, bye, method="BYE"),
    ]
    kinds = [k for k in classify(packets) if k]
    assert kinds == ["INVITE answered 407", "ACK absorbed", "INVITE relayed", "reply 180 INVITE", "BYE relayed"]
