"""The parser both engines share: bytes to rows (``reader``, ``formats``), rows to typed
events (``normalize``), the rules applied (``validate``), and files to a batch
(``batch``). The embedded engine runs it in-process; the Spark engine on its executors.
"""
