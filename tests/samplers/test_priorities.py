import numpy as np
import pytest

from xreplay.errors import PriorityError
from xreplay.samplers.priorities import check_priorities


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.5])
def test_check_priorities_names_item_and_value(bad):
    with pytest.raises(PriorityError, match=rf"priority {bad} for index 'b' \(position 1\)"):
        check_priorities([1.0, bad], names=["a", "b"])
