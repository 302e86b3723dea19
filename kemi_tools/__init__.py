"""What runs beside Kamailio, never inside it: kept out of the kemi package, so a live reload
(kemi/reload.py) neither checks nor re-imports it and `make install` does not copy it.

    stack/   start and stop MariaDB, rtpengine and Kamailio (make run, the tests, make bench);
             stack/install.py is make install / make uninstall
    kit/     the SIPp kit: the project's call flows against any deployment (make sipp)
    sipp.py  the one SIPp runner (the tests, the kit, make bench), scenarios/ its scenario files
"""
