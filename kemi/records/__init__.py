"""Call records and capture: one record per call in MySQL (acc), HEP capture (siptrace).

schema.py     the table acc writes (kemi_acc: one row per accounted transaction), its columns
              and what fills them, the per-call view (kemi_cdr)
reason.py     the Q.850 cause of a Reason header, who ended an unanswered call
media.py      an anchored call's media figures from rtpengine's query answer
spool.py      records written while the database was down (db_flatstore) and their replay
cdr.py        reading the view for `python3 -m kemi cdr`
part.py       the KSR part (Records / NoRecords): flags and AVPs where the routing knows them
settings.py   [records] and [capture], and the module parameters they render
"""
