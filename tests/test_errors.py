from __future__ import annotations

import pytest

from pneumoscan.errors import InputError, check_at_least_one


def test_a_count_below_one_is_an_input_error_naming_the_flag() -> None:
    with pytest.raises(InputError, match=r"^--n-boot 0: must be at least 1$"):
        check_at_least_one(0, "--n-boot")
    check_at_least_one(1, "--n-boot")
