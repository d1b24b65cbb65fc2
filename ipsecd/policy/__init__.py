"""ipsecd.policy"""
