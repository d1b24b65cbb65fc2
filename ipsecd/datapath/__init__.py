"""ipsecd.datapath"""
