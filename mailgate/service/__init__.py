"""The processes that carry a message down the road, and how an admin sees them.

``daemon`` runs the listeners and IMAP fetchers and supervises the
``worker`` processes (processing, delivery); ``runtime`` builds what they
share from the configuration; ``reload`` and ``systemd`` answer SIGHUP and
the service manager; ``status``, ``doctor`` and ``metrics`` say how it is going.
"""
