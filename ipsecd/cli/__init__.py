"""ipsecd.cli"""
