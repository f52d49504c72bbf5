"""The model: :class:`~insid3lab.model.insid3.INSID3` and what it holds (encoded images, positional bases and
their cache, reference shots).

- :mod:`~insid3lab.model.insid3`: ``INSID3`` (settings, ``encode``, ``set_reference``, ``segment``, ...);
- :mod:`~insid3lab.model.encoding`: ``Encoded``, one encoded image;
- :mod:`~insid3lab.model.basis` and :mod:`~insid3lab.model.basis_cache`: positional bases and their disk cache;
- :mod:`~insid3lab.model.references`: the reference shots; :mod:`~insid3lab.model.batch`: batched passes;
- :mod:`~insid3lab.model.decoding`: one encoded target against the model's state.
"""
