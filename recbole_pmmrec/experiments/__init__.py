"""Experiment commands built on the library: ``pmmrec-benchmark`` (runner, report),
``pmmrec-performance``, ``pmmrec-demo`` and ``pmmrec-transfer``. The library never imports
this package."""
