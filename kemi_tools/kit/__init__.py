"""The SIPp kit: the project's call flows as one command against any deployment.

    python3 -m kemi_tools.kit register --target 192.0.2.10:5060 --domain pbx.example.com \
        --users 2001:123456,2002:123456 --rate 5 --count 20
    python3 -m kemi_tools.kit call ...   (the first user takes the calls, the others call it)
    python3 -m kemi_tools.kit options --target 192.0.2.10:5060

    runner.py   options, the three runs, counting and the printed summary

SIPp itself runs through kemi_tools/sipp.py, with the scenarios of kemi_tools/scenarios/
(the tests' and the benchmark's as well).

See docs/sipp-kit.md.
"""
