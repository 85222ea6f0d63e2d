"""wilddet.engine"""
