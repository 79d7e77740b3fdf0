#!/bin/sh
df -h -x tmpfs -x devtmpfs 2>/dev/null || df -h
