module github.com/pacsd/pacsd

go 1.26.8

require github.com/suyashkumar/dicom v1.1.0

require (
	golang.org/x/exp v0.0.0-20240525044651-4c93da0ed11d // indirect
	golang.org/x/text v0.43.0 // indirect
)
