// Package nhs knows the NHS number, the identifier the National Health
// Service of England, Wales and the Isle of Man gives every patient: ten
// digits whose last is a modulus-11 check digit over the first nine.
//
// pacsd links the local patients of several trusts through it (package
// index), so a number is trusted only when its issuer is the NHS and its
// check digit is right; Issuers says which Issuer of Patient ID values
// name the NHS. The check is a few lines of arithmetic that no library
// of the Go ecosystem offers on its own.
package nhs
