"""Body content: text and HTML extraction, sanitising, reply trimming, attachments, TNEF."""
