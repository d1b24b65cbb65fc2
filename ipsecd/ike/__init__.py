"""ipsecd.ike"""
