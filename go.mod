module github.com/pacsd/pacsd

go 1.26.8
