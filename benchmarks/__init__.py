"""Speed benchmark: workbook.engine's training against the fastest idiomatic torch CPU loop and
against the machine's GEMM FLOP bound (random data with CIFAR-10's shapes; speed only).

    measurements.py  nets, random data, batch order, thread limits, sgemm rates, the FLOP bound,
                     peak memory, the environment
    runners.py       the timed programs (engine.train, engine.train_step, the torch loop) and
                     update_times, which interleaves their repeats
    protocols.py     whole training runs end to end (arch2; arch5 in a subprocess)
    report.py        the targets and the printed tables
    cli.py           the command line; writes benchmarks/results.json (full runs only)

Run ``python -m benchmarks`` (or ``python benchmarks/speed.py``, or ``make bench``).
"""
