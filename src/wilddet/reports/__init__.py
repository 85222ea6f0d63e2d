"""wilddet.reports"""
