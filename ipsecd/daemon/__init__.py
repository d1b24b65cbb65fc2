"""ipsecd.daemon"""
