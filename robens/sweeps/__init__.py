"""The parts of a sweep: :mod:`~robens.sweeps.grid` (schema, expansion, planning) and
:mod:`~robens.sweeps.trials` (one trial's state, run and records). The public entry points,
``plan_sweep`` and ``run_sweep`` among them, are in :mod:`robens.sweep`."""
