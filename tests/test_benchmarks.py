"""The benchmarks' own code paths run (their figures are measured by hand, not here)."""

import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")


@pytest.fixture(scope="module")
def train_step():
    sys.path.insert(0, BENCHMARKS)
    try:
        import train_step
        yield train_step
    finally:
        sys.path.remove(BENCHMARKS)


@pytest.mark.parametrize("d_width, perceptual", [(0, False), (4, True)])
def test_a_gan_step_of_train_step_gan_only_runs(train_step, d_width, perceptual):
    # --gan-only once built its own copy of train.py's settings and broke when one was added.
    seconds = train_step.gan_step_seconds(1, 1, d_width, perceptual, xla=False, hr_patch=32)
    assert seconds > 0


def test_the_benchmarks_share_their_timing_and_cpu_line_without_a_cycle(train_step):
    import inspect

    import machine
    import pipeline

    assert pipeline.model_rate is train_step.model_rate
    assert pipeline.print_cpu is machine.print_cpu
    source = inspect.getsource(train_step)
    assert "import pipeline" not in source and "from pipeline" not in source
    assert machine.cpu_line().startswith("cpu: ")
