"""Build hook for the native data-path extension (see ipsecd/datapath/native/)."""

from setuptools import setup

ext_modules: list[object] = []
# The native ESP/AH extension is registered here by ipsecd/datapath/native (issue 3).

setup(ext_modules=ext_modules)
