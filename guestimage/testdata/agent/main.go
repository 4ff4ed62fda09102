// Command agent is a stand-in guest agent for the build tests: any static
// x86-64 binary will do as /init.
package main

func main() {}
