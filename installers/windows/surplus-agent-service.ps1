# Registers the headless Surplus agent as a Windows service, for a PC that serves others without
# anyone logged in. Run as Administrator, after registering the device as that data folder:
#   surplus --data-dir "$env:ProgramData\Surplus" --hub https://HUB login --email YOU
#   surplus --data-dir "$env:ProgramData\Surplus" device register --name NAME
#   .\surplus-agent-service.ps1 -Surplus "C:\Program Files\Surplus\surplus.exe"
# Untested: there is no Windows machine in Surplus's CI (see installers/README.md).
param(
    [Parameter(Mandatory = $true)][string]$Surplus,
    [string]$DataDir = "$env:ProgramData\Surplus"
)
$ErrorActionPreference = "Stop"
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
# Only SYSTEM and Administrators may read the agent's credentials and vault.
icacls $DataDir /inheritance:r /grant:r "SYSTEM:(OI)(CI)F" "Administrators:(OI)(CI)F" | Out-Null
New-Service -Name "SurplusAgent" `
    -DisplayName "Surplus agent" `
    -Description "Lends spare disk and idle CPU to Surplus subscribers, and backs up chosen folders." `
    -BinaryPathName "`"$Surplus`" --data-dir `"$DataDir`" agent" `
    -StartupType Automatic
sc.exe failure SurplusAgent reset= 86400 actions= restart/10000/restart/60000/restart/600000 | Out-Null
Start-Service SurplusAgent
