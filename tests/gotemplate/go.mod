module tunebench/gotemplate

go 1.19
