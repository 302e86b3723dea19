"""The names kamailio.cfg and the Python routing share, and what a route step returns.

A leaf module: it imports nothing, so every other module may import it. Whatever kamailio.cfg
needs of it is rendered into kamailio-settings.cfg (kemi/settings/render.py), never written
twice. kemi/kamailio_entry.py spells RELOAD_GENERATION_PV out again because it must run while
the package does not import (tests/unit/test_package_layout.py keeps the two equal).
"""

# --- what a step of the request path returns -----------------------------------------------
NEXT = True          # go on with the next step
DONE = False         # answered, relayed or dropped: the request path ends here

# --- Router methods Kamailio calls by name ---------------------------------------------------
# tm callbacks armed per transaction (t_on_branch / t_on_reply / t_on_failure)
BRANCH_ROUTE = "ksr_branch_manage"
ONREPLY_ROUTE = "ksr_onreply_manage"
FAILURE_ROUTE = "ksr_failure_manage"
# module callbacks set in kamailio.cfg (rendered as #!define KEMI_ON_SL_REPLY / KEMI_XHTTP_EVENT)
ON_SL_REPLY_CALLBACK = "ksr_on_sl_reply"      # tm on_sl_reply: replies matching no transaction
XHTTP_CALLBACK = "ksr_xhttp_event"            # xhttp event_callback: HTTP requests (/metrics)
# topology hiding (kemi/topology/), one SBC side hiding: topos asks which outgoing messages to leave alone
TOPOS_EVENT_CALLBACK = "ksr_topos_event"
RECORDS_REPLAY_CALLBACK = "ksr_records_replay"   # rtimer (records on): the spool replayed into MySQL

# every callback above enters Python; with settings metrics.count_python_entries each entry
# is counted in a statistics-module variable (kemi_entries_request_route, ...; `kamcmd
# stats.get_statistics script:`), and any other method name a site arms in kemi_entries_other
ENTRY_CALLBACKS = ("ksr_request_route", "ksr_on_sl_reply", BRANCH_ROUTE, ONREPLY_ROUTE, FAILURE_ROUTE,
                   XHTTP_CALLBACK, TOPOS_EVENT_CALLBACK)
ENTRY_STAT_PREFIX = "kemi_entries_"
ENTRY_STATS = {callback: ENTRY_STAT_PREFIX + callback.removeprefix("ksr_") for callback in ENTRY_CALLBACKS}
OTHER_ENTRY_STAT = ENTRY_STAT_PREFIX + "other"

# --- message flags (FLT_) and branch flags (FLB_), rendered as #!define lines ----------------
FLT_NATS = 5          # the request's sender is behind NAT
FLB_NATB = 6          # the branch's destination is behind NAT (usrloc nat_bflag: stored with the contact)
FLB_NATSIPPING = 7    # send SIP OPTIONS keepalives to this contact (nathelper sipping_bflag)
FLT_SDP_OFFER = 8     # the request carried an SDP offer to rtpengine: its 1xx/2xx SDP is the answer
FLAGS = {"FLT_NATS": FLT_NATS, "FLB_NATB": FLB_NATB, "FLB_NATSIPPING": FLB_NATSIPPING,
         "FLT_SDP_OFFER": FLT_SDP_OFFER}
# flags only the Python routing reads (not rendered): keep them apart from the ones above
FLT_HIDDEN = 14       # topology hiding: the transaction belongs to a hidden call (kemi/topology/)
# records (kemi/records/): acc writes this transaction's row (db_flag), also when it fails
# (failed_transaction_flag); rendered with the records' lines, only when records are on
FLT_ACC = 20
FLT_ACC_FAILED = 21

# --- htables (declared in kamailio-common.cfg from the rendered HTABLE_* defines) -----------
BAN_TABLE = "ipban"               # source address -> banned (expires after security.ban_time)
AUTH_FAILURE_TABLE = "authfail"   # source address -> failed digest attempts
CLUSTER_TABLE = "kemicluster"     # cluster: this node's sync state, the peers' contact counts

# --- DMQ (cluster): the channel (R-URI user of KDMQ requests) the routing itself answers ----
CLUSTER_CHANNEL = "kemi"          # "count?" -> each peer answers "count=N" (its contacts)

# --- pipelimit (overload: kemi/overload/): the pipe measuring Kamailio's socket queues -------
OVERLOAD_PIPE = "kemi_overload"

# --- cfg-group variables (declared in kamailio-settings.cfg; kamcmd cfg.seti GROUP VAR N) ----
RELOAD_GENERATION_GROUP, RELOAD_GENERATION_VAR = "kemi_reload", "generation"   # make reload bumps it
RELOAD_GENERATION_PV = f"$sel(cfg_get.{RELOAD_GENERATION_GROUP}.{RELOAD_GENERATION_VAR})"
DECISION_LOG_GROUP, DECISION_LOG_VAR = "kemi_log", "decisions"                 # 1: decision log on
DECISION_LOG_PV = f"$sel(cfg_get.{DECISION_LOG_GROUP}.{DECISION_LOG_VAR})"

# --- AVPs: transaction state, read again in the branch, reply and failure routes ------------
AVP_INGRESS = "$avp(sbc_ingress)"       # SBC: side name the request came from
AVP_EGRESS = "$avp(sbc_egress)"         # SBC: side name it was relayed through
AVP_GATEWAY_SET = "$avp(sbc_gwset)"     # SBC: dispatcher set it went to (failover), unset otherwise
AVP_MEDIA_CALLER = "$avp(media_caller)"   # media security of the request's sender (kemi/media/security.py)
AVP_MEDIA_CALLEE = "$avp(media_callee)"   # ... and of its receiver: the reply's SDP goes callee -> caller
RTPENGINE_INSTANCE_PV = "$avp(rtpengine_instance)"   # rtpengine rtp_inst_pvar: the instance that answered
DS_CURRENT_GATEWAY = "$xavp(_dsdst_=>uri)"           # dispatcher's xavp_dst: the gateway tried now

# --- sockets and tables ----------------------------------------------------------------------
METRICS_SOCKET_NAME = "metrics"   # the listen socket's name=: the only one serving /metrics
DMQ_SOCKET_NAME = "dmq"           # cluster: the DMQ socket (KDMQ from peers only)
HEALTH_SOCKET_NAME = "health"     # overload.health_listen: OPTIONS keepalives only, its own worker
WEBSOCKET_SOCKET_NAMES = ("ws", "wss")   # [websocket] sockets' names (then ws-2, ...): the WebSocket handshake
LOCATION_TABLE = "location"       # usrloc's table (registrar save / lookup, usrloc preload)
SUBSCRIBER_TABLE = "subscriber"   # auth_db's table, as kamctl add writes it

# --- call limits (kemi/limits/): one dialog profile (with values) per kind of concurrent
# limit, rendered as DLG_PROFILES for the dialog module's profiles_with_value --------------
LIMIT_PROFILES = {"caller": "kemi_caller", "callee": "kemi_callee", "trunk": "kemi_trunk",
                  "gateway": "kemi_gateway", "side": "kemi_side"}
LIMIT_SIZE_PV = "$var(kemi_calls)"      # where get_profile_size() leaves a profile's size

# pipelimit has one timer (timer_interval, whole seconds) for every pipe: the call-rate limits'
# windows (kemi/limits/rate.py) and the overload check (kemi/overload/) share it
PIPELIMIT_INTERVAL_S = 1
