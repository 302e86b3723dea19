#!/usr/bin/env python3
"""Turn `kamcmd app_python.api_list` output into kemi/testing/ksr_api_<version>.json.

The fake KSR (kemi.testing) uses the snapshot to refuse functions Kamailio does not export
and arguments of the wrong type, as the real KSR does. Usage:
    kamcmd -s unix:/run/kamailio/kamailio_ctl app_python.api_list | scripts/ksr-api-snapshot.py > FILE
"""
import json
import re
import sys

funcs: dict[str, dict[str, dict]] = {}
for block in re.findall(r"func: \{(.*?)\}", sys.stdin.read(), re.S):
    fields = dict(re.findall(r"^\s*(\w+):[ \t]*(.*?)\s*$", block, re.M))
    module = fields.get("module", "")
    params = [p.strip() for p in fields.get("params", "none").split(",") if p.strip() != "none"]
    funcs.setdefault(module or "", {})[fields["name"]] = {"ret": fields["ret"], "params": params}
json.dump(funcs, sys.stdout, indent=1, sort_keys=True)
print()
