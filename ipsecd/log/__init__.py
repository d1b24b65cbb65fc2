"""ipsecd.log"""
