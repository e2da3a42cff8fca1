"""Keeping what mailgate holds safe, and letting it go: backup and restore.

``backup`` makes a consistent, compressed copy of a live SQLite installation
(the database, mail still in the spool journal or the pipe folder, a
manifest with checksums); ``restore`` brings one back into an empty
installation and refuses to overwrite a live one.
"""
