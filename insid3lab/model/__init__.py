"""The model: :class:`~insid3lab.model.insid3.INSID3` and what it holds (encoded images, positional bases and
their cache, reference shots).

- :mod:`~insid3lab.model.insid3`: ``INSID3`` (settings and ``params``, ``encode``, ``set_reference``,
  ``segment``, ``segment_many``, ``decode``, the views ``positional`` and ``shots``);
- :mod:`~insid3lab.model.encoding`: ``Encoded``, one encoded image;
- :mod:`~insid3lab.model.basis` and :mod:`~insid3lab.model.basis_cache`: positional bases (``model.positional``)
  and their disk cache;
- :mod:`~insid3lab.model.references`: the reference shots (``model.shots``); :mod:`~insid3lab.model.batch`:
  batched passes;
- :mod:`~insid3lab.model.decoding`: one encoded target against the model's state.

The model never imports the tasks built over it (:mod:`insid3lab.tasks`); their short forms
(``model.segment_labels``, ``model.track``, ``model.match``, ...) are attached to the class by
:mod:`insid3lab.tasks.shortcuts`. ``insid3lab.INSID3`` is the class with them; import it from there.
"""
