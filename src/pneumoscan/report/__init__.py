"""pneumoscan.report"""
