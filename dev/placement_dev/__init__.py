"""Development stand-ins for the placement service (not shipped with it): the Policy
Engine and SPRM stand-ins (`standins`) and the one-process local stack behind
`placement-manager dev` (`devstack`)."""
