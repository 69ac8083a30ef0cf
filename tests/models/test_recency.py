"""history_half_life: item-to-item models follow the latest interactions when asked to."""

import numpy as np
import pytest

from recengine.data import Histories
from recengine.models import create_model
from recengine.testing import contract_dataset


@pytest.mark.parametrize("name", ["ease", "itemknn", "rp3beta"])
def test_recent_items_dominate_with_a_short_half_life(name):
    data = contract_dataset()
    half = data.n_items // 2
    group_a = [data.items.index(f"i{i}") for i in range(4)]
    group_b = [data.items.index(f"i{half + 1}")]
    history = Histories.from_lists([group_a + group_b], data.n_items)  # oldest first: B is the latest

    def share_of_b(half_life: float) -> float:
        model = create_model(name, history_half_life=half_life).fit(data)
        items, _ = model.recommend(history, k=5)
        return float(np.mean([int(data.items.ids[i][1:]) >= half for i in items[0]]))

    assert share_of_b(0.0) <= 0.4
    assert share_of_b(0.25) >= 0.6
