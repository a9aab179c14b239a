"""Settings: each limit that must be a finite number above 0 is refused in one line naming it, the way the user
wrote it (MB as given, seconds as `:g` shows them)."""
from __future__ import annotations

import numpy as np
import pytest

from pneumoscan.errors import InputError
from pneumoscan.service.settings import Settings


@pytest.mark.parametrize(("options", "message"), [
    ({"max_upload_mb": 0.0}, "--max-upload-mb 0.0: must be a number above 0, such as 50"),
    ({"max_batch_mb": -1.5}, "max_batch_mb -1.5: must be a number above 0, such as 100"),
    ({"max_batch_mb": float("nan")}, "max_batch_mb nan: must be a number above 0, such as 100"),
    ({"upload_idle_s": 0.0}, "--upload-idle-s 0: must be a number of seconds above 0, such as 30"),
    ({"upload_total_s": -2.0}, "--upload-total-s -2: must be a number of seconds above 0, such as 600; leave it out "
                               "for no limit"),
    ({"header_timeout_s": float("inf")}, "--header-timeout-s inf: must be a number of seconds above 0, such as 10"),
    ({"shutdown_timeout_s": float("nan")}, "--shutdown-timeout-s nan: must be a number of seconds above 0, such as 8"),
])
def test_a_limit_not_above_0_or_not_finite_is_refused_in_one_line(options: dict[str, float], message: str) -> None:
    with pytest.raises(InputError) as err:
        Settings(**options)
    assert str(err.value) == message


def test_limits_above_0_pass_as_any_number_type() -> None:
    """Numbers of numpy's types too (not only JSON's int and float), and no total upload time at all."""
    settings = Settings(max_upload_mb=np.float32(20), max_batch_mb=np.int64(40), upload_idle_s=5,
                        upload_total_s=None, header_timeout_s=np.float64(2.5), shutdown_timeout_s=1)
    assert settings.batch_limit_mb == 40
