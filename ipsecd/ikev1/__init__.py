"""ipsecd.ikev1"""
