import os
import signal

import pytest

from superres import messages


@pytest.fixture
def sigterm_handled():
    """messages.stop_on_sigterm's handler for one test; the previous handler after it."""
    previous = signal.getsignal(signal.SIGTERM)
    messages.stop_on_sigterm()
    yield
    signal.signal(signal.SIGTERM, previous)
    messages._sigterms.clear()


def test_sigterm_raises_terminated_and_exits_143(sigterm_handled, capsys):
    with pytest.raises(messages.Terminated) as caught:
        os.kill(os.getpid(), signal.SIGTERM)
    assert messages.interrupted(caught.value, "done") == 143
    assert capsys.readouterr().err.strip() == "terminated (SIGTERM); done"


def test_terminated_that_c_code_turned_into_another_error_comes_out_as_terminated(
        sigterm_handled):
    with pytest.raises(messages.Terminated):
        with messages.terminated_intact():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except messages.Terminated:   # what a C extension does with it
                raise SystemError("returned a result with an exception set") from None


def test_errors_without_a_sigterm_stay_what_they_are(sigterm_handled):
    with pytest.raises(TypeError):
        with messages.terminated_intact():
            raise TypeError("a real bug")


def test_ctrl_c_exits_130(capsys):
    assert messages.interrupted(KeyboardInterrupt(), "done") == 130
    assert capsys.readouterr().err.strip() == "interrupted; done"


def test_a_sigterm_that_c_code_swallowed_is_raised_again(sigterm_handled):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    except messages.Terminated:   # what TensorFlow's C code can do with it: print it, go on
        pass
    with pytest.raises(messages.Terminated):   # at the next step of the work
        messages.raise_if_terminated()
    with pytest.raises(messages.Terminated):   # or when the work ends as if nothing came
        with messages.terminated_intact():
            pass


def test_without_a_sigterm_work_goes_on():
    messages.raise_if_terminated()
    with messages.terminated_intact():
        pass
