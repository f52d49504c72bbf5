"""A notebook run in a real JupyterLab in headless Chromium: the server, the page, the run (:mod:`helpers.browser.lab`)."""
