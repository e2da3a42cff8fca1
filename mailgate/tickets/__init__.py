"""What happens to a ticket once a stored message has been parsed and guarded.

``pipeline`` claims inbound rows and hands each to ``handle``, which decides the
road (bounce, duplicate, agent mail, new ticket, reply) and acts: ``articles``
and ``attachment_store`` write what was said, ``lifecycle`` moves the status,
``bounces`` records our own mail coming back, ``notify`` queues the answers.
"""
