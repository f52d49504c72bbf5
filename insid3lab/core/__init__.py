"""The bottom layer: reading images, masks and frames, preprocessing, digests, warnings, palettes, weights sources.

Nothing here imports any other part of insid3lab. Import the module you need:

- :mod:`~insid3lab.core.imageio`: the one image reader (files, PIL, arrays → 8-bit RGB), pixel limits;
- :mod:`~insid3lab.core.preprocess`: images and masks to the network's input, the basis images;
- :mod:`~insid3lab.core.video`: frames of a video file or a folder, in natural order;
- :mod:`~insid3lab.core.palette`: the DAVIS palette, palette PNGs, concept colours, the void label;
- :mod:`~insid3lab.core.digest`: content digests of tensors and modules;
- :mod:`~insid3lab.core.files`: every file written whole or not at all, with the umask's permissions; strict JSON;
- :mod:`~insid3lab.core.warn`: warnings that point at the caller's line;
- :mod:`~insid3lab.core.weights`: whether a weights source is random (``random:ARCH[:SEED]``).
"""
