"""Warnings point at the caller's line, not at insid3lab's own modules."""

import warnings

from insid3lab.core.warn import warn
from insid3lab.stages.subspace import clamp_components


def test_a_warning_names_the_callers_file_even_from_another_layer_of_the_package():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn("direct")
        assert clamp_components(500, 384, 1024) == 384  # warns from insid3lab/stages
    assert [w.filename for w in caught] == [__file__, __file__]
    assert "using 384" in str(caught[1].message)
