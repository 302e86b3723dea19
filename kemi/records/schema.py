"""The records' table, its columns (what acc writes, and from which variable) and the per-call view.

acc writes one row into TABLE per transaction it accounts (docs/records.md): the initial
INVITE's final answer, the BYE, the CANCEL, and a call the proxy refused itself. Its own
columns come first, in the order acc inserts them (ACC_COLUMNS, then TIME_ATTR); then the
extra columns (EXTRAS), each from a variable the records part sets (an AVP of the
transaction) or a message value. VIEW joins one call's rows into one record, typed.

The extra columns hold text, '' when the routing set nothing: acc writes an unset variable
as '' (acc_extra_nullable 0). As NULL (acc_extra_nullable 1) it would be refused by MySQL's
strict mode for a number column, and db_flatstore, the spool, ignores the NULL mark and
writes whatever the value's bytes are. The view turns '' into NULL and text into numbers.

The same EXTRAS render acc's db_extra (settings.py) and tell the spool replay (spool.py) which
field is which, so the column order is written once.
"""
from __future__ import annotations

from dataclasses import dataclass

TABLE = "kemi_acc"
VIEW = "kemi_cdr"

# acc's fixed columns, in acc's insert order (acc_db.c: method, from_tag, to_tag, callid,
# sip_code, sip_reason, time), then the time_attr column (time_mode 2: seconds.microseconds)
ACC_COLUMNS = ("method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time")
TIME_ATTR = "time_exact"

# what the row is about (src_kind / dst_kind)
KIND_EXTENSION = "extension"     # a subscriber (authenticated by digest), or a registered contact
KIND_GATEWAY = "gateway"         # a listed SBC gateway (trusted by address) / a gateway set's member
KIND_DOMAIN = "domain"           # a foreign domain (an authenticated user's call elsewhere)
# who ended the call (ended_by)
CALLER, CALLEE, PROXY = "caller", "callee", "proxy"

# how the view reads an extra column's text
TEXT, INTEGER, SECONDS, MOS = "text", "integer", "seconds", "mos"
VIEW_CAST = {INTEGER: "UNSIGNED", SECONDS: "DOUBLE", MOS: "DECIMAL(3,1)"}


@dataclass(frozen=True)
class Extra:
    column: str
    pv: str            # what acc writes into it (db_extra): a transaction AVP or a message value
    kind: str          # TEXT, INTEGER, SECONDS (Unix time with microseconds), MOS
    length: int        # the column's VARCHAR length
    doc: str


def avp(name: str) -> str:
    return f"$avp(cdr_{name})"


EXTRAS = (
    Extra("cseq", "$cs", INTEGER, 16, "CSeq number of the request (with callid, from_tag, method: one transaction)"),
    Extra("node", "$def(RECORDS_NODE)", INTEGER, 8,
          "cluster node that wrote the row (cluster.node; 0 without a cluster)"),
    Extra("request_time", avp("rtime"), SECONDS, 24, "when the request was routed, Unix seconds with microseconds"),
    Extra("caller", avp("caller"), TEXT, 128, "From user of the INVITE"),
    Extra("callee_dialed", avp("dialed"), TEXT, 128, "R-URI user as the caller dialed it"),
    Extra("callee_routed", avp("routed"), TEXT, 255, "R-URI the INVITE was relayed with (contact, gateway, ...)"),
    Extra("next_hop", avp("hop"), TEXT, 255, "destination URI ($du) it was sent to, when not the R-URI's host"),
    Extra("src_side", avp("src_side"), TEXT, 32, "SBC side the call came from"),
    Extra("src_kind", avp("src_kind"), TEXT, 16, "extension or gateway"),
    Extra("src", avp("src"), TEXT, 128, "the extension, or the gateway's address:port"),
    Extra("dst_side", avp("dst_side"), TEXT, 32, "SBC side the call left through"),
    Extra("dst_kind", avp("dst_kind"), TEXT, 16, "extension, gateway or domain"),
    Extra("dst", avp("dst"), TEXT, 255, "the extension, the gateway URI, or the foreign domain"),
    Extra("attempts", avp("attempts"), INTEGER, 8, "destinations tried (SBC failover: 2 and more)"),
    Extra("q850_cause", avp("q850"), INTEGER, 8, "Q.850 cause of a Reason header (final reply, BYE, CANCEL)"),
    Extra("reason_header", avp("reason"), TEXT, 255, "that Reason header as received"),
    Extra("ended_by", avp("ended"), TEXT, 8, "unanswered calls: caller (cancelled), callee (refused), proxy"),
    # media (BYE rows of anchored calls): party a = the BYE's From, b = its To; packets and
    # bytes a party sent (rtpengine received), and what that party reported receiving (RTCP)
    *(Extra(f"{party}_{name}", avp(f"{party}_{name}"), kind, 24, f"{doc} ({who})")
      for party, who in (("a", "the BYE's sender"), ("b", "the BYE's receiver"))
      for name, kind, doc in (
          ("rtp_packets", INTEGER, "RTP packets sent"),
          ("rtp_bytes", INTEGER, "RTP bytes sent"),
          ("lost", INTEGER, "packets lost on the way to this party (its RTCP)"),
          ("jitter_ms", INTEGER, "average jitter this party reported"),
          ("mos", MOS, "average MOS of what this party received"),
          ("mos_min", MOS, "lowest MOS of what this party received"))),
)

COLUMNS = (*ACC_COLUMNS, TIME_ATTR, *(e.column for e in EXTRAS))
EXTRA_BY_COLUMN = {e.column: e for e in EXTRAS}


def db_extra() -> str:
    """acc's db_extra: column=pv;... (the columns after time_exact, in this order)."""
    return ";".join(f"{e.column}={e.pv}" for e in EXTRAS)


def sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def create_table_sql() -> str:
    extras = ",\n".join(f"    `{e.column}` VARCHAR({e.length}) DEFAULT '' NOT NULL COMMENT {sql_string(e.doc)}"
                        for e in EXTRAS)
    return f"""CREATE TABLE IF NOT EXISTS `{TABLE}` (
    `id` BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `method` VARCHAR(16) DEFAULT '' NOT NULL,
    `from_tag` VARCHAR(128) DEFAULT '' NOT NULL,
    `to_tag` VARCHAR(128) DEFAULT '' NOT NULL,
    `callid` VARCHAR(255) DEFAULT '' NOT NULL,
    `sip_code` VARCHAR(3) DEFAULT '' NOT NULL,
    `sip_reason` VARCHAR(128) DEFAULT '' NOT NULL,
    `time` DATETIME NOT NULL COMMENT 'when acc wrote it: the final reply (INVITE), the BYE answered',
    `{TIME_ATTR}` DOUBLE NULL COMMENT 'the same, Unix seconds with microseconds',
{extras},
    UNIQUE KEY `transaction_idx` (`callid`(191), `from_tag`(64), `cseq`, `method`),
    KEY `request_time_idx` (`request_time`),
    KEY `caller_idx` (`caller`),
    KEY `callee_idx` (`callee_dialed`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
  COMMENT='kemi call records: one row per accounted transaction (docs/records.md)'"""


def typed(alias: str, column: str) -> str:
    """An extra column of row `alias` as the view shows it: NULL when empty, a number when one."""
    value = f"NULLIF({alias}.`{column}`, '')"
    cast = VIEW_CAST.get(EXTRA_BY_COLUMN[column].kind)
    return f"CAST({value} AS {cast})" if cast else value


# The view: one row per call = its INVITE row, with its first BYE and its CANCEL, matched by
# Call-ID and tags. Party a of a BYE row is its sender: the caller when the BYE's From tag is
# the INVITE's From tag.
_FIRST = """(SELECT x.id FROM `{table}` x WHERE x.callid = i.callid AND x.method = '{method}' {tags}
             ORDER BY x.request_time, x.id LIMIT 1)"""
_BYE_TAGS = ("AND ((x.from_tag = i.from_tag AND x.to_tag = i.to_tag) "
             "OR (x.from_tag = i.to_tag AND x.to_tag = i.from_tag))")
_CANCEL_TAGS = "AND x.from_tag = i.from_tag"
MEDIA_COLUMNS = ("rtp_packets", "rtp_bytes", "lost", "jitter_ms", "mos", "mos_min")


def _media(party: str, name: str) -> str:
    """caller_/callee_ column from the BYE's a/b columns."""
    mine, other = ("a", "b") if party == "caller" else ("b", "a")
    return f"IF(b.from_tag = i.from_tag, {typed('b', f'{mine}_{name}')}, {typed('b', f'{other}_{name}')}) " \
           f"AS {party}_{name}"


def create_view_sql() -> str:
    answered = "i.sip_code LIKE '2%'"
    start, bye, cancel = typed("i", "request_time"), typed("b", "request_time"), typed("c", "request_time")
    end = f"IF({answered}, {bye}, COALESCE({cancel}, i.{TIME_ATTR}))"
    plain = ",\n    ".join(f"{typed('i', c)} AS {c}" for c in (
        "node", "caller", "callee_dialed", "callee_routed", "next_hop", "src_side", "src_kind", "src",
        "dst_side", "dst_kind", "dst", "attempts"))
    media = ",\n    ".join(_media(party, name) for party in ("caller", "callee") for name in MEDIA_COLUMNS)
    return f"""CREATE OR REPLACE VIEW `{VIEW}` AS
SELECT
    i.id AS id,
    i.callid AS call_id,
    {plain},
    FROM_UNIXTIME({start}) AS start_time,
    IF({answered}, FROM_UNIXTIME(i.{TIME_ATTR}), NULL) AS answer_time,
    FROM_UNIXTIME({end}) AS end_time,
    ROUND({end} - {start}, 3) AS duration,
    CAST(IF({answered}, CEIL({bye} - i.{TIME_ATTR}), 0) AS UNSIGNED) AS billable_seconds,
    CAST(i.sip_code AS UNSIGNED) AS sip_code,
    i.sip_reason AS sip_reason,
    COALESCE({typed('b', 'q850_cause')}, {typed('c', 'q850_cause')}, {typed('i', 'q850_cause')}) AS q850_cause,
    COALESCE({typed('b', 'reason_header')}, {typed('c', 'reason_header')}, {typed('i', 'reason_header')})
        AS reason_header,
    CASE WHEN b.id IS NOT NULL THEN IF(b.from_tag = i.from_tag, '{CALLER}', '{CALLEE}')
         WHEN {answered} THEN NULL
         WHEN c.id IS NOT NULL THEN '{CALLER}'
         ELSE {typed('i', 'ended_by')} END AS ended_by,
    {media},
    i.from_tag AS from_tag, i.to_tag AS to_tag
FROM `{TABLE}` i
LEFT JOIN `{TABLE}` b ON b.id = {_FIRST.format(table=TABLE, method="BYE", tags=_BYE_TAGS)}
LEFT JOIN `{TABLE}` c ON c.id = {_FIRST.format(table=TABLE, method="CANCEL", tags=_CANCEL_TAGS)}
WHERE i.method = 'INVITE'"""


# the view's columns a reader sees (kemi cdr), in its order
VIEW_COLUMNS = (
    "id", "call_id", "node", "caller", "callee_dialed", "callee_routed", "next_hop",
    "src_side", "src_kind", "src", "dst_side", "dst_kind", "dst", "attempts",
    "start_time", "answer_time", "end_time", "duration", "billable_seconds", "sip_code", "sip_reason",
    "q850_cause", "reason_header", "ended_by",
    *(f"{party}_{name}" for party in ("caller", "callee") for name in MEDIA_COLUMNS),
    "from_tag", "to_tag",
)


def provisioning_sql() -> list[str]:
    """What makes the table and the view, idempotently (make run, the tests, `kemi cdr --schema`)."""
    return [create_table_sql(), create_view_sql()]
