"""ipsecd.io"""
