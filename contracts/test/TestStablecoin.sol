// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestStablecoin
/// @notice TEST AND DEMO ONLY — never deploy to a network with real value. A 6-decimal
/// ERC-20 ("Test USD", tUSD) that anyone may mint, so tests and demos can fund ERC-20
/// orders without a faucet.
contract TestStablecoin is ERC20 {
    constructor() ERC20("TrustShip Test USD (test only)", "tUSD") {}

    /// @notice Mints `amount` base units to `to`. Anyone may call it: this is a test token.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice 6 decimals, like the common USD stablecoins.
    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
