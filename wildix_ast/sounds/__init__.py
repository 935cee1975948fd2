"""sounds"""
