"""ipsecd.ikev2"""
